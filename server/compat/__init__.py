"""Every place Switchboard reaches inside another library, one module each.

Each module states what it relies on, the versions it was tested with, and is covered by
tests/test_compat.py, which fails loudly when an upgrade takes that away. Nothing outside this
folder touches another library's private names.
"""
