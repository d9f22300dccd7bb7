"""The token limit checked before parsing refuses exactly what graphql-core refuses at the limit,
never a document graphql-core would parse within it."""

from __future__ import annotations

import pytest
from graphql import GraphQLSyntaxError, parse
from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.token_limit import check_token_limit

PIECES = [
    "{",
    "}",
    "a",
    "b_1",
    "...",
    "(",
    ")",
    ":",
    "$v",
    "!",
    "[",
    "]",
    "=",
    "@skip",
    "|",
    "&",
    "12",
    "-3.5e10",
    '"str { } # x"',
    '"esc \\" quote"',
    '"""block\n " "" { a b c }"""',
    "# a comment { a b }\n",
    ",",
    " ",
    "\n",
]


def graphql_refuses(text: str, limit: int) -> bool:
    """Whether graphql-core refuses the document at this limit (the limit, or a syntax error
    met before it: either way, nothing was lost by refusing it early)."""
    try:
        parse(text, max_tokens=limit)
    except GraphQLSyntaxError:
        return True
    return False


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=60), st.integers(min_value=1, max_value=40))
def test_the_precheck_refuses_only_what_graphql_core_refuses(pieces: list[str], limit: int) -> None:
    text = " ".join(pieces)
    try:
        check_token_limit(text, limit)
    except GraphQLSyntaxError:
        assert graphql_refuses(text, limit), text


@pytest.mark.parametrize("size", [1999, 2000, 2001, 30_000])
def test_a_document_of_fields_is_refused_past_the_limit_as_graphql_core_says(size: int) -> None:
    text = "{ " + "a " * size + "}"  # size + 2 tokens
    refused = size + 2 > 2000
    if not refused:
        check_token_limit(text, 2000)
        return
    with pytest.raises(GraphQLSyntaxError) as found:
        check_token_limit(text, 2000)
    with pytest.raises(GraphQLSyntaxError) as expected:
        parse(text, max_tokens=2000)
    assert found.value.message == expected.value.message
    assert found.value.locations == expected.value.locations


VALUES = [
    '"s { } # not a comment"',
    '"""block { "" } """',
    "12",
    "-3.5e10",
    "$v",
    "[1, 2]",
    "{k: true}",
    "ENUM",
]
SELECTIONS = st.one_of(
    st.sampled_from(["a", "b_1", "__typename", "...F", "... on T { x }", "# note { a }\n c"]),
    st.builds(
        lambda name, value: f"{name}(arg: {value})", st.sampled_from(["f", "g"]), st.sampled_from(VALUES)
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(SELECTIONS, min_size=1, max_size=30), st.integers(min_value=5, max_value=120))
def test_on_valid_documents_the_precheck_agrees_with_graphql_core(selections: list[str], limit: int) -> None:
    text = "query Q($v: Int = 3) @dir {\n  " + "\n  ".join(selections) + "\n}"
    parse(text)  # valid without a limit
    try:
        check_token_limit(text, limit)
        early = False
    except GraphQLSyntaxError:
        early = True
    assert early == graphql_refuses(text, limit), (text, limit)
