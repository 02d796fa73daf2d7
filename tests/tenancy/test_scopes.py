import pytest

from agent33.auth.scopes import grants, invalid_scopes


@pytest.mark.parametrize(
    ("granted", "required", "expected"),
    [
        (["admin"], "outcomes:write", True),
        (["outcomes:*"], "outcomes:write", True),
        (["outcomes:*"], "workflows:read", False),
        (["outcomes:read"], "outcomes:write", False),
        (["outcomes:write"], "outcomes:write", True),
        ([], "outcomes:read", False),
        (["multimodal:admin"], "multimodal:write", False),
        (["*"], "outcomes:read", False),
    ],
)
def test_scope_grants(granted, required, expected):
    assert grants(granted, required) is expected


def test_unknown_scopes_are_reported():
    assert invalid_scopes(["outcomes:read", "outcomes:*", "admin"]) == []
    bad = ["outcomes:delete", "bogus:*", "*"]
    assert invalid_scopes(bad) == bad
