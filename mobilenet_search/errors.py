"""The one exception type for mistakes a user can make (bad budget, bad file, missing study).

The command line turns it into one line on stderr and exit code 2; programming errors
still raise their own exceptions.
"""


class UserError(ValueError):
    """Bad input from a user: the message names the input and what is wrong with it."""


def require(module: str, extra: str, what: str) -> None:
    """A :class:`UserError` naming the extra to install when an optional ``module`` is missing.

    >>> require("json", "none", "the standard library")
    """
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise UserError(f"{what} needs the {module} package: pip install 'mobilenet-search[{extra}]'")
