"""modelrollout_devkit: the API emulator, the sandbox, the reference model server, the load generator and the demo.

Test and development machinery for the modelrollout operator, in a distribution of its own
(``modelrollout-devkit``) so that the operator neither ships nor loads it. It adds ``modelrollout sandbox``
and ``modelrollout demo`` to the operator's CLI through the ``modelrollout.commands`` entry points
(:mod:`modelrollout_devkit.commands`).
"""
