"""The one exception type for mistakes a user can make (bad budget, bad file, missing study).

The command line turns it into one line on stderr and exit code 2; programming errors
still raise their own exceptions.
"""


class UserError(ValueError):
    """Bad input from a user: the message names the input and what is wrong with it."""
