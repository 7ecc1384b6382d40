"""The one exception type for a user's mistake.

The CLI turns an :class:`InputError` into one line on stderr and exit code 2; any other
exception is a bug and keeps its traceback. It subclasses ``ValueError`` so API callers can
catch the standard type.
"""


class InputError(ValueError):
    """Bad input from a user: names the offending value and what was expected."""
