"""PointNetAutoencoder: shapes, invariances, padding, seeded initialisation, errors, and a tiny overfit run."""

from __future__ import annotations

import pytest
import torch

import geomot
from geomot._core.errors import ShapeError, ValidationError
from geomot.losses.amortized import AmortizedSlicedWasserstein
from geomot.models import AmortizedProjection, PointNetAutoencoder

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = {"encoder_widths": (16, 32), "decoder_widths": (64,), "latent_dim": 8}


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def clouds(b: int, n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, n, 3, generator=gen(seed)) * 2 - 1


def test_default_sizes_follow_the_paper():
    ae = PointNetAutoencoder(n_out=16, generator=gen(0))
    convs = [(m.in_channels, m.out_channels) for m in ae.point_layers]
    assert convs == [(3, 64), (64, 64), (64, 64), (64, 128), (128, 1024)]
    assert (ae.to_latent.in_features, ae.to_latent.out_features) == (1024, 256)
    fcs = [(m.in_features, m.out_features) for m in ae.hidden_layers] + [(1024, ae.to_points.out_features)]
    assert fcs == [(256, 1024), (1024, 1024), (1024, 48)]


def test_shapes_unit_latent_and_mirrored_output():
    ae = PointNetAutoencoder(n_out=20, generator=gen(0), **SMALL)
    x = clouds(3, 50)
    out = ae(x)
    assert out.shape == (3, 20, 3) and out.abs().max() < 1  # tanh output
    z = ae.encode(x)
    assert z.shape == (3, 8)
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(3))
    assert ae.decode(z).shape == (3, 20, 3)
    ae.eval()
    assert ae(x[0]).shape == (20, 3) and ae.encode(x[0]).shape == (8,) and ae.decode(z[0]).shape == (20, 3)
    torch.testing.assert_close(ae(x[0]), ae(x)[0])


@pytest.mark.parametrize("batch_norm", [True, False])
def test_encoder_is_order_and_padding_invariant(batch_norm):
    ae = PointNetAutoencoder(n_out=10, batch_norm=batch_norm, generator=gen(0), **SMALL).double()
    x = clouds(2, 12).double()
    lengths = torch.tensor([12, 7])
    padded = torch.cat([x, torch.full((2, 4, 3), 9.0, dtype=torch.float64)], dim=1)
    padded[1, 7:] = -5.0
    other = padded.clone()
    other[:, 12:] = 0.5
    other[1, 7:] = 3.0
    # training mode: batch statistics over the real points only, so what the padding holds changes nothing
    torch.testing.assert_close(ae.encode(padded, lengths), ae.encode(other, lengths), rtol=0, atol=1e-12)
    ae.eval()
    z = ae.encode(padded, lengths)
    torch.testing.assert_close(z[0], ae.encode(x[0]), rtol=0, atol=1e-12)
    torch.testing.assert_close(z[1], ae.encode(x[1, :7]), rtol=0, atol=1e-12)
    perm = torch.randperm(12, generator=gen(1))
    torch.testing.assert_close(ae.encode(x[:, perm]), ae.encode(x), rtol=0, atol=1e-12)


def test_seeded_initialisation_is_reproducible_and_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    a = PointNetAutoencoder(n_out=8, generator=gen(3), **SMALL)
    b = PointNetAutoencoder(n_out=8, generator=gen(3), **SMALL)
    c = PointNetAutoencoder(n_out=8, generator=gen(4), **SMALL)
    assert torch.equal(torch.get_rng_state(), state)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["to_latent.weight"], sc["to_latent.weight"])
    plain = PointNetAutoencoder(n_out=8, **SMALL)  # global generator, ordinary CPU tensors
    assert {q.device.type for q in plain.parameters()} == {"cpu"}


def test_errors():
    with pytest.raises(ValidationError, match=r"n_out: expected an integer >= 1, got 0"):
        PointNetAutoencoder(n_out=0)
    with pytest.raises(ValidationError, match=r"encoder_widths: expected a non-empty sequence"):
        PointNetAutoencoder(encoder_widths=())
    with pytest.raises(ValidationError, match=r"decoder_widths: expected an integer >= 1, got 0"):
        PointNetAutoencoder(decoder_widths=(0,))
    with pytest.raises(ValidationError, match=r"batch_norm: expected True or False"):
        PointNetAutoencoder(batch_norm="yes")
    ae = PointNetAutoencoder(n_out=8, generator=gen(0), **SMALL)
    with pytest.raises(ShapeError, match=r"x: expected last dimension 3"):
        ae(torch.zeros(2, 5, 6))
    with pytest.raises(ShapeError, match=r"z: expected last dimension 8"):
        ae.decode(torch.zeros(2, 9))
    with pytest.raises(ShapeError, match=r"batch norm in training mode needs at least 2 point sets"):
        ae(torch.zeros(1, 5, 3))
    with pytest.raises(ShapeError, match=r"x_lengths: only valid with a batched"):
        ae.encode(torch.zeros(5, 3), torch.tensor([5]))


def test_tiny_autoencoder_overfits_two_clouds_with_the_amortised_loss():
    g = gen(0)
    x = clouds(2, 64, seed=5) * torch.tensor([1.0, 0.5, 0.2])
    x[1] = x[1].flip(-1)  # two different shapes
    ae = PointNetAutoencoder(n_out=64, batch_norm=False, generator=g, **SMALL)
    loss_fn = AmortizedSlicedWasserstein(projector=AmortizedProjection("attention", d_k=16, generator=g),
                                         n_projections=32, kappa=10.0)
    opt = torch.optim.Adam(ae.parameters(), lr=1e-2)

    def sw() -> float:
        with torch.no_grad():
            return float(geomot.sliced_wasserstein(ae(x), x, n_projections=200, generator=gen(7)))

    start = sw()
    for _ in range(40):
        loss = loss_fn(ae(x), x, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert sw() < 0.3 * start
