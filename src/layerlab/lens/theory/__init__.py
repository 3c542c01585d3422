"""Closed forms the instruments are tested against.

- ``deep_linear``: Saxe, McClelland & Ganguli 2013 mode trajectories of deep linear networks;
- ``linear_regression``: Advani & Saxe 2017 error curves of high-dimensional linear regression;
- ``kernels``: the infinite-width NTK (and NNGP) of a 2-layer ReLU network (arc-cosine kernels).
"""
