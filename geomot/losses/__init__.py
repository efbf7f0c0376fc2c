"""L4: losses between shapes/measures: pure functions plus thin ``nn.Module`` shells."""

# Each block below belongs to one module; add names only inside your module's block.
# -- sliced ----------------------------------------------------------------------------------------------
# -- sinkhorn --------------------------------------------------------------------------------------------
# -- varifold / chamfer / regularisers -------------------------------------------------------------------
# -- end -------------------------------------------------------------------------------------------------

__all__: list[str] = [
    # -- sliced --
    # -- sinkhorn --
    # -- varifold / chamfer / regularisers --
]
