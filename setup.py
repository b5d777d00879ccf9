"""The compiled fast path: built where a C compiler and the Python headers are present.

`optional=True`: where it cannot be built (no compiler, not Linux), the
install goes on and trapgate runs its pure-Python twins (see README, "Fast path").
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("gateway.receivers._recvmmsg", ["gateway/receivers/_recvmmsg.c"], optional=True,
                  extra_compile_args=["-O2", "-Wall", "-Wextra"]),
        Extension("formats._syslog_fast", ["formats/_syslog_fast.c"], optional=True,
                  extra_compile_args=["-O2", "-Wall", "-Wextra"]),
    ],
)
