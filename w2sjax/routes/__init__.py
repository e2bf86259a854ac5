"""Routes: each turns an objective into its spectral form (``spectral.Decomposition``).

``dense``      eigh of G_train, or of FᵀF where G_train = F Fᵀ (exact, jit-able).
``krylov``     block Lanczos quadrature steps, driven to convergence by ``engine``.
``operators``  G_train as a stored, tiled or sharded operator for Krylov (``sharding`` for the mesh).
"""
