"""Closed-form theory of the seed papers, in pure numpy/scipy/sympy.

- :mod:`theory.disks`: Newson et al., Prop. 2 and App. B (optimal bias-free disk decoder, Airy profile).
- :mod:`theory.position`: Newson et al., Sect. 5 and Prop. 3 (encoding a Dirac's position with [1,2,1]).
- :mod:`theory.homogeneity`: Newson et al., Prop. 1 (bias-free decoders are positively homogeneous).
- :mod:`theory.derivations`: sympy derivations of the above (Euler-Lagrange equation, Prop. 3 closed form).
"""
