"""Claims: the paper catalogue (``catalogue``), claim cards and their verdicts.

Submodules are imported where they are used; importing this package loads nothing else.
"""
