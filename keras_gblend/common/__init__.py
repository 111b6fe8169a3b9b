"""What every layer may use; imports nothing else of the package.

Modules:
    messages: the warning categories (`GBlendWarning`), the estimate lines, and
        the argument checks they word.
    io_utils: atomic writes of the files the package writes.
"""
