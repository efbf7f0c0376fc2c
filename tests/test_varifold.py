"""Varifold / current kernel distance: closed forms, invariances, brute force, gradients, backends, bad input."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from geomot._core.errors import ShapeError, ValidationError
from geomot.losses.varifold import VARIFOLD_KERNELS, VarifoldLoss, varifold_distance, varifold_inner
from geomot.ops.geometry import face_areas_normals, face_centroids
from geomot.structures import Measure, Mesh, PointCloud, mesh_to_measure
from tests.conftest import icosphere, shared_path

pytestmark = pytest.mark.usefixtures("one_torch_thread")

KERNELS = ["linear", "binet", "gaussian_oriented"]


def _rotation(seed: int, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=dtype))
    q = q * torch.sign(torch.diagonal(r))
    return q if torch.det(q) > 0 else -q


def _dense(v1, f1, v2, f2, sigma, kernel, sigma_n=0.5):
    """Brute-force ||S - T||^2 from the definition with a dense (F1 + F2)^2 kernel matrix."""
    a1, n1 = face_areas_normals(v1, f1)
    a2, n2 = face_areas_normals(v2, f2)
    c = torch.cat([face_centroids(v1, f1), face_centroids(v2, f2)])
    n = torch.cat([n1, n2])
    a = torch.cat([a1, -a2])
    t = n @ n.T
    kn = {"linear": t, "binet": t**2, "gaussian_oriented": torch.exp(-2 * (1 - t) / sigma_n**2)}[kernel]
    k = torch.exp(-torch.cdist(c, c) ** 2 / sigma**2) * kn
    return a @ k @ a


def _uv_sphere(n_lat: int, n_lon: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Outward-oriented UV sphere (poles + rings), a tessellation unrelated to the icosphere's."""
    verts = [[0.0, 0.0, 1.0]]
    for i in range(1, n_lat):
        th = math.pi * i / n_lat
        for j in range(n_lon):
            ph = 2 * math.pi * j / n_lon
            verts.append([math.sin(th) * math.cos(ph), math.sin(th) * math.sin(ph), math.cos(th)])
    verts.append([0.0, 0.0, -1.0])
    south = len(verts) - 1
    ring = lambda i, j: 1 + (i - 1) * n_lon + (j % n_lon)  # noqa: E731
    faces = [[0, ring(1, j), ring(1, j + 1)] for j in range(n_lon)]
    for i in range(1, n_lat - 1):
        for j in range(n_lon):
            a, b, c, d = ring(i, j), ring(i, j + 1), ring(i + 1, j), ring(i + 1, j + 1)
            faces += [[a, c, d], [a, d, b]]
    faces += [[south, ring(n_lat - 1, j + 1), ring(n_lat - 1, j)] for j in range(n_lon)]
    return torch.tensor(verts, dtype=torch.float64), torch.tensor(faces)


def _perturbed(v: torch.Tensor, scale: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return v + scale * torch.randn(v.shape, generator=g, dtype=v.dtype)


def test_uv_sphere_is_outward_and_closed() -> None:
    v, f = _uv_sphere(12, 24)
    a, n = face_areas_normals(v, f)
    assert bool(((face_centroids(v, f) * n).sum(-1) > 0).all())
    assert abs(float(a.sum()) - 4 * math.pi) < 0.25


@pytest.mark.parametrize("kernel", KERNELS)
def test_zero_on_identical_and_positive_otherwise(kernel: str) -> None:
    v, f = icosphere(2)
    m = Mesh(v, f)
    d0 = varifold_distance(m, Mesh(v.clone(), f), sigma=0.3, kernel=kernel)
    assert abs(float(d0)) < 1e-10
    d1 = varifold_distance(m, Mesh(_perturbed(v, 0.05, 0), f), sigma=0.3, kernel=kernel)
    assert float(d1) > 1e-4


@pytest.mark.parametrize("kernel", KERNELS)
def test_matches_dense_brute_force(kernel: str) -> None:
    v1, f1 = icosphere(1)
    v2, f2 = _uv_sphere(6, 10)
    v2 = _perturbed(v2 * 0.9, 0.03, 1)
    ref = _dense(v1, f1, v2, f2, 0.4, kernel, 0.7)
    got = varifold_distance(Mesh(v1, f1), Mesh(v2, f2), sigma=0.4, kernel=kernel, sigma_normal=0.7, chunk_size=7)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kernel", KERNELS)
def test_invariant_under_joint_rigid_motion(kernel: str) -> None:
    v1, f1 = icosphere(2)
    v2 = _perturbed(v1, 0.05, 2)
    r, t = _rotation(3), torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    d = varifold_distance(Mesh(v1, f1), Mesh(v2, f1), sigma=0.25, kernel=kernel)
    dr = varifold_distance(Mesh(v1 @ r.T + t, f1), Mesh(v2 @ r.T + t, f1), sigma=0.25, kernel=kernel)
    torch.testing.assert_close(dr, d, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kernel", KERNELS)
def test_two_tessellations_closer_than_scaled_sphere(kernel: str) -> None:
    vi, fi = icosphere(3)  # 1280 faces
    vu, fu = _uv_sphere(20, 36)  # 1368 faces, other connectivity
    vu = vu @ _rotation(4).T
    ico = Mesh(vi, fi)
    same = varifold_distance(ico, Mesh(vu, fu), sigma=0.2, kernel=kernel)
    scaled = varifold_distance(ico, Mesh(1.05 * vi, fi), sigma=0.2, kernel=kernel)
    assert 0 <= float(same) < 0.5 * float(scaled)


def test_orientation_closed_forms() -> None:
    """Flipping every normal: currents give ||S - (-S)||^2 = 4 ||S||^2, unoriented varifolds give 0."""
    v, f = icosphere(1)
    m, flipped = Mesh(v, f), Mesh(v, f[:, [0, 2, 1]])
    ss = varifold_inner(m, m, sigma=0.5, kernel="linear")
    assert ss.shape == (1,)
    torch.testing.assert_close(varifold_distance(m, flipped, sigma=0.5, kernel="linear"), 4 * ss[0])
    assert abs(float(varifold_distance(m, flipped, sigma=0.5, kernel="binet"))) < 1e-10
    # oriented Gaussian, sigma_n = 0.5: k_n(-1) = exp(-16) and opposite normals are far apart, so <S, -S> ~ 0
    go = varifold_distance(m, flipped, sigma=0.5, kernel="gaussian_oriented")
    ss_go = varifold_inner(m, m, sigma=0.5, kernel="gaussian_oriented")[0]
    torch.testing.assert_close(go, 2 * ss_go, rtol=1e-4, atol=0)


def test_mass_scaling_and_normalize() -> None:
    v, f = icosphere(1)
    m = Mesh(v, f)
    base = varifold_inner(m, m, sigma=0.5)
    # areas scale by s^2 and normals do not change; at sigma = 1e6 the spatial kernel is 1 up to 1e-11
    wide = varifold_inner(m, m, sigma=1e6)
    torch.testing.assert_close(varifold_inner(m, Mesh(2 * v, f), sigma=1e6), 4 * wide, rtol=1e-9, atol=0)
    a = face_areas_normals(v, f)[0]
    torch.testing.assert_close(varifold_inner(m, m, sigma=0.5, normalize=True), base / a.sum() ** 2)


def test_inputs_mesh_tensor_pointcloud_measure_agree() -> None:
    v1, f1 = icosphere(1)
    v2 = _perturbed(v1, 0.05, 5)
    a1, n1 = face_areas_normals(v1, f1)
    a2, n2 = face_areas_normals(v2, f1)
    c1, c2 = face_centroids(v1, f1), face_centroids(v2, f1)
    ref = varifold_distance(Mesh(v1, f1), Mesh(v2, f1), sigma=0.3, reduction="none")
    assert ref.shape == (1,)
    t = varifold_distance(c1, c2, x_normals=n1, y_normals=n2, x_weights=a1, y_weights=a2, sigma=0.3, reduction="none")
    assert t.shape == ()
    torch.testing.assert_close(t, ref[0])
    pc = varifold_distance(PointCloud(c1, n1, a1), PointCloud(c2, n2, a2), sigma=0.3)
    torch.testing.assert_close(pc, ref[0])
    # Measure (B, N, 6) = mesh_to_measure(..., "varifold") is the normalised varifold
    meas = varifold_distance(mesh_to_measure(Mesh(v1, f1)), mesh_to_measure(Mesh(v2, f1)), sigma=0.3)
    torch.testing.assert_close(meas, varifold_distance(Mesh(v1, f1), Mesh(v2, f1), sigma=0.3, normalize=True))
    # tensors without weights: uniform 1/N masses
    u = varifold_distance(c1, c2, x_normals=n1, y_normals=n2, sigma=0.3)
    w = torch.full_like(a1, 1 / a1.shape[0])
    torch.testing.assert_close(u, varifold_distance(c1, c2, x_normals=n1, y_normals=n2, x_weights=w, y_weights=w,
                                                    sigma=0.3))


def test_padded_batch_matches_items_and_reductions() -> None:
    v1, f1 = icosphere(1)
    v2, f2 = _uv_sphere(5, 8)
    v3 = _perturbed(v1, 0.05, 6)
    x = Mesh([v1, v2], [f1, f2])
    y = Mesh([v3, v1], [f1, f1])
    none = varifold_distance(x, y, sigma=0.4, kernel="gaussian_oriented", reduction="none", chunk_size=5)
    assert none.shape == (2,)
    for b, (p, q) in enumerate([((v1, f1), (v3, f1)), ((v2, f2), (v1, f1))]):
        torch.testing.assert_close(none[b], _dense(*p, *q, 0.4, "gaussian_oriented"))
    torch.testing.assert_close(varifold_distance(x, y, sigma=0.4, kernel="gaussian_oriented"), none.mean())
    torch.testing.assert_close(varifold_distance(x, y, sigma=0.4, kernel="gaussian_oriented", reduction="sum"),
                               none.sum())


@pytest.mark.parametrize("kernel", KERNELS)
def test_gradcheck_float64(kernel: str) -> None:
    v, f = icosphere(0)
    v2 = _perturbed(v, 0.1, 7)
    x = _perturbed(v, 0.05, 8).requires_grad_(True)

    def fn(verts: torch.Tensor) -> torch.Tensor:
        return varifold_distance(Mesh(verts, f), Mesh(v2, f), sigma=0.7, kernel=kernel, chunk_size=6,
                                 backend="torch")

    assert torch.autograd.gradcheck(fn, (x,), fast_mode=True)


def test_gradcheck_tensor_inputs_all_arguments() -> None:
    g = torch.Generator().manual_seed(9)
    x = torch.randn(7, 3, generator=g, dtype=torch.float64, requires_grad=True)
    n = torch.randn(7, 3, generator=g, dtype=torch.float64, requires_grad=True)
    a = torch.rand(7, generator=g, dtype=torch.float64).add(0.1).requires_grad_(True)
    y = torch.randn(5, 3, generator=g, dtype=torch.float64)
    m = torch.randn(5, 3, generator=g, dtype=torch.float64)

    def fn(x, n, a):
        return varifold_distance(x, y, x_normals=n, y_normals=m, x_weights=a, sigma=1.5, kernel="binet",
                                 chunk_size=3)

    assert torch.autograd.gradcheck(fn, (x, n, a))


@pytest.mark.parametrize("kernel", ["binet", "linear", "gaussian_oriented"])
def test_gradcheck_both_sides_every_argument(kernel: str) -> None:
    # the hand-written backward of the torch blocks: points, normals and weights of both measures
    g = torch.Generator().manual_seed(11)
    args = [torch.randn(7, 3, generator=g, dtype=torch.float64), torch.randn(7, 3, generator=g, dtype=torch.float64),
            torch.rand(7, generator=g, dtype=torch.float64).add(0.1), torch.randn(5, 3, generator=g, dtype=torch.float64),
            torch.randn(5, 3, generator=g, dtype=torch.float64), torch.rand(5, generator=g, dtype=torch.float64).add(0.1)]
    args[1], args[4] = (torch.nn.functional.normalize(t, dim=-1) for t in (args[1], args[4]))  # unit normals
    args = [t.requires_grad_(True) for t in args]

    def fn(x, n, a, y, m, b):
        return varifold_distance(x, y, x_normals=n, y_normals=m, x_weights=a, y_weights=b, sigma=1.5, kernel=kernel,
                                 chunk_size=3, backend="torch")

    assert torch.autograd.gradcheck(fn, tuple(args))


def test_dtype_and_module_shell() -> None:
    v, f = icosphere(1, dtype=torch.float32)
    loss = VarifoldLoss(sigma=0.3, kernel="gaussian_oriented")
    out = loss(Mesh(v, f), Mesh(1.1 * v, f))
    assert out.dtype == torch.float32 and out.shape == ()
    ref = varifold_distance(Mesh(v.double(), f), Mesh(1.1 * v.double(), f), sigma=0.3, kernel="gaussian_oriented")
    torch.testing.assert_close(out.double(), ref, rtol=1e-4, atol=1e-6)
    assert "gaussian_oriented" in repr(loss)
    assert set(KERNELS) <= set(VARIFOLD_KERNELS.names())


@pytest.mark.slow
@pytest.mark.parametrize("kernel", KERNELS)
def test_keops_backend_matches_torch(kernel: str) -> None:
    pytest.importorskip("pykeops")
    v, f = icosphere(2)
    v2 = _perturbed(v, 0.05, 10).requires_grad_(True)
    out = {}
    for backend in ("torch", "keops"):
        d = varifold_distance(Mesh(v, f), Mesh(v2, f), sigma=0.3, kernel=kernel, backend=backend)
        (g,) = torch.autograd.grad(d, v2)
        out[backend] = (d, g)
    torch.testing.assert_close(out["keops"][0], out["torch"][0], rtol=1e-8, atol=1e-12)
    torch.testing.assert_close(out["keops"][1], out["torch"][1], rtol=1e-7, atol=1e-10)


def test_bad_input() -> None:
    v, f = icosphere(0)
    m = Mesh(v, f)
    c = face_centroids(v, f)
    n = face_areas_normals(v, f)[1]
    with pytest.raises(ValidationError, match="sigma: expected a positive value, got 0"):
        varifold_distance(m, m, sigma=0.0)
    with pytest.raises(ValidationError, match="sigma: expected a positive value, got -1"):
        varifold_distance(m, m, sigma=-1)
    with pytest.raises(ValidationError, match="sigma_normal: expected a positive value"):
        varifold_distance(m, m, sigma_normal=0)
    with pytest.raises(ValidationError, match="kernel: unknown varifold kernel 'cauchy'; valid: binet"):
        varifold_distance(m, m, kernel="cauchy")
    with pytest.raises(ValidationError, match="backend: unknown varifold backend 'cuda'"):
        varifold_distance(m, m, backend="cuda")
    with pytest.raises(ValidationError, match="reduction: expected 'mean', 'sum' or 'none', got 'max'"):
        varifold_distance(m, m, reduction="max")
    with pytest.raises(ValidationError, match="chunk_size: expected a positive integer"):
        varifold_distance(m, m, chunk_size=0)
    with pytest.raises(ShapeError, match="y: expected positions of dimension 3"):
        varifold_distance(c, c[:, :2], x_normals=n, y_normals=n[:, :2])
    with pytest.raises(ShapeError, match="y: expected batch size 1"):
        varifold_distance(m, Mesh([v, v], [f, f]))
    with pytest.raises(ShapeError, match="x_normals: expected shape"):
        varifold_distance(c, c, x_normals=n[:3], y_normals=n)
    with pytest.raises(ValidationError, match="x_normals: required when x is a tensor"):
        varifold_distance(c, c, y_normals=n)
    with pytest.raises(ValidationError, match="x: contains 1 NaN"):
        bad = c.clone()
        bad[0, 0] = float("nan")
        varifold_distance(bad, c, x_normals=n, y_normals=n)
    with pytest.raises(ValidationError, match="y_normals: contains 1 NaN"):
        badn = n.clone()
        badn[2, 1] = float("nan")
        varifold_distance(c, c, x_normals=n, y_normals=badn)
    with pytest.raises(ShapeError, match="x: expected a non-empty tensor"):
        varifold_distance(c[:0], c, x_normals=n[:0], y_normals=n)
    with pytest.raises(ValidationError, match="x_weights: must be non-negative"):
        varifold_distance(c, c, x_normals=n, y_normals=n, x_weights=-torch.ones(c.shape[0], dtype=c.dtype))
    with pytest.raises(ValidationError, match="x: a PointCloud needs normals"):
        varifold_distance(PointCloud(c), m)
    with pytest.raises(ValidationError, match="y_normals: only accepted with a tensor y"):
        varifold_distance(m, m, y_normals=n)
    with pytest.raises(ShapeError, match=r"x: a varifold Measure needs support \(B, N, 2d\)"):
        varifold_distance(Measure(torch.rand(4, 3, dtype=torch.float64)), m)
    with pytest.raises(ShapeError, match="y: expected a Mesh, PointCloud, Measure or tensor"):
        varifold_distance(m, [v, f])
    with pytest.raises(ValidationError, match="kernel: unknown varifold kernel"):
        VarifoldLoss(kernel="nope")


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**16), kernel=st.sampled_from(KERNELS), sigma=st.floats(0.2, 3.0))
def test_properties_symmetry_face_permutation_nonnegative(seed: int, kernel: str, sigma: float) -> None:
    g = torch.Generator().manual_seed(seed)
    v, f = icosphere(0)
    v1 = v + 0.2 * torch.randn(v.shape, generator=g, dtype=v.dtype)
    v2 = 1.2 * v + 0.2 * torch.randn(v.shape, generator=g, dtype=v.dtype)
    perm = torch.randperm(f.shape[0], generator=g)
    d = varifold_distance(Mesh(v1, f), Mesh(v2, f), sigma=sigma, kernel=kernel)
    torch.testing.assert_close(varifold_distance(Mesh(v2, f), Mesh(v1, f), sigma=sigma, kernel=kernel), d)
    torch.testing.assert_close(varifold_distance(Mesh(v1, f[perm]), Mesh(v2, f), sigma=sigma, kernel=kernel), d)
    assert float(d) > -1e-10


@pytest.mark.data
def test_deformed_spheres_real_meshes() -> None:
    """Real deformed spheres (3,840 faces): symmetric, rigid-motion invariant, smaller half-way along a linear
    interpolation between two shapes of one connectivity."""
    from geomot.io import load

    a = load(shared_path("deform_sph", "off", "deform_sph_1.off"), dtype=torch.float64)
    b = load(shared_path("deform_sph", "off", "deform_sph_2.off"), dtype=torch.float64)
    va, vb, f = a.verts, b.verts, a.faces
    kw = dict(sigma=0.2, kernel="gaussian_oriented")
    d = varifold_distance(a, b, **kw)
    torch.testing.assert_close(varifold_distance(b, a, **kw), d)
    r = _rotation(11)
    torch.testing.assert_close(varifold_distance(Mesh(va @ r.T, f), Mesh(vb @ r.T, b.faces), **kw), d, rtol=1e-8,
                               atol=1e-12)
    if torch.equal(a.faces, b.faces):
        assert 0 < float(varifold_distance(a, Mesh(0.5 * (va + vb), f), **kw)) < float(d)


def test_measure_argument_follows_the_rule() -> None:
    v, f = icosphere(1)
    m1, m2 = Mesh(v, f), Mesh(_perturbed(v, 0.05, 1), f)
    ref = varifold_distance(m1, m2)
    torch.testing.assert_close(varifold_distance(m1, m2, measure="varifold"), ref)
    torch.testing.assert_close(VarifoldLoss(measure="varifold")(m1, m2), ref)
    # measure= is irrelevant for a non-Mesh input
    mu = mesh_to_measure(m1, "varifold")
    torch.testing.assert_close(varifold_distance(mu, mu, measure="varifold"), torch.zeros((), dtype=v.dtype),
                               atol=1e-12, rtol=0)
    c, n = face_centroids(v, f), face_areas_normals(v, f)[1]
    for measure in ("vertices", "faces", "samples"):
        out = varifold_distance(c, c, x_normals=n, y_normals=n, measure=measure)
        torch.testing.assert_close(out, varifold_distance(c, c, x_normals=n, y_normals=n))
        with pytest.raises(ValidationError, match=f"measure: the varifold kernel needs normals.*got '{measure}'"):
            varifold_distance(m1, m2, measure=measure)
        with pytest.raises(ValidationError, match=f"measure: the varifold kernel needs normals.*got '{measure}'"):
            VarifoldLoss(measure=measure)
    with pytest.raises(ValidationError, match="measure: unknown mesh measure 'verts'"):
        varifold_distance(m1, m2, measure="verts")


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_positions_give_nan_without_checks(value: float) -> None:
    import geomot

    v, f = icosphere(1)
    bad = v.clone()
    bad[5, 2] = value
    with geomot.data_checks(False):
        for kernel in KERNELS:
            assert not bool(torch.isfinite(varifold_distance(Mesh(bad, f), Mesh(v, f), kernel=kernel)))
            assert not bool(torch.isfinite(varifold_distance(Mesh(v, f), Mesh(bad, f), kernel=kernel)))
    big = (v * 1e20).float()
    out = varifold_distance(Mesh(big, f), Mesh(1.1 * big, f), sigma=1e20)
    assert not bool(torch.isfinite(out))  # face areas ~1e40 overflow float32: no finite value


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sigma": 0.0}, "sigma: expected a positive value"),
        ({"sigma_normal": -1.0}, "sigma_normal: expected a positive value"),
        ({"reduction": "avg"}, "reduction: expected 'mean', 'sum' or 'none', got 'avg'"),
        ({"backend": "cuda"}, "backend: unknown varifold backend 'cuda'"),
        ({"chunk_size": 0}, "chunk_size: expected a positive integer, got 0"),
        ({"sigam": 1.0}, r"VarifoldLoss: unknown setting\(s\) 'sigam'"),
        ({"x_weights": None}, "VarifoldLoss: 'x_weights' is a per-call input"),
    ],
)
def test_shell_checks_settings_at_construction(kwargs, match) -> None:
    with pytest.raises(ValidationError, match=match):
        VarifoldLoss(**kwargs)


@pytest.mark.parametrize("kernel", KERNELS)
def test_exponent_clamp_matches_unclamped_formula(kernel: str, monkeypatch) -> None:
    """The torch backend clamps the exponents at half the dtype's exp2 floor (fast exp2, no subnormals): value and
    gradients equal those of the unclamped formula to float32 precision, on inputs where most exponents are far
    below the clamp."""
    import geomot.losses.varifold as vmod

    g = torch.Generator().manual_seed(7)
    x, y = torch.randn(300, 3, generator=g), torch.randn(250, 3, generator=g)
    nx = torch.nn.functional.normalize(torch.randn(300, 3, generator=g), dim=-1)
    ny = torch.nn.functional.normalize(torch.randn(250, 3, generator=g), dim=-1)
    sigma = 0.15
    floor = -0.5 * vmod.exp2_floor(torch.float32) / vmod.LOG2E  # the clamp in natural units (42.6)
    assert (torch.cdist(x, y) ** 2 / sigma**2 > floor).float().mean() > 0.5

    def run():
        xx, nn = x.clone().requires_grad_(True), nx.clone().requires_grad_(True)
        d = varifold_distance(xx, y, x_normals=nn, y_normals=ny, sigma=sigma, kernel=kernel, backend="torch")
        return (d, *torch.autograd.grad(d, (xx, nn)))

    clamped = run()
    monkeypatch.setattr(vmod, "exp2_floor", lambda dtype: -math.inf)
    exact = run()
    for a, b in zip(clamped, exact):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-12)
