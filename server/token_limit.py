"""The token limit, checked before parsing: graphql-core parses about 50,000 tokens a second here,
so a document past the limit (2000 tokens) costs ~40 ms of parsing before it is refused. A
regular expression finds where the token after the limit would start in well under a
millisecond, and the document is refused at once with graphql-core's own error.

The count never exceeds graphql-core's (comments count, as graphql-core counts them; a string
or block string is one token; commas and whitespace none), so nothing the parser would accept
is refused here; anything under the limit by this count is parsed, and graphql-core enforces
the limit exactly.
"""

from __future__ import annotations

import re
from itertools import islice

from graphql import GraphQLSyntaxError, Source

_TOKEN = re.compile(
    r'"""(?:[^"\\]|\\.|"(?!""))*"""'  # block string
    r'|"(?:[^"\\\n\r]|\\.)*"'  # string
    r"|#[^\n\r]*"  # comment
    r"|[_A-Za-z][_0-9A-Za-z]*"  # name
    r"|-?[0-9][_0-9A-Za-z.+-]*"  # number
    r"|\.\.\."
    r"|[!$&():=@\[\]{|}]"
)


def check_token_limit(text: str, max_tokens: int | None) -> None:
    """Raise graphql-core's syntax error if `text` holds more than `max_tokens` tokens."""
    if max_tokens is None or len(text) <= max_tokens:
        return  # every token takes at least one character
    past = next(islice(_TOKEN.finditer(text), max_tokens, None), None)
    if past is not None:
        raise GraphQLSyntaxError(
            Source(text), past.start(), f"Document contains more than {max_tokens} tokens. Parsing aborted."
        )
