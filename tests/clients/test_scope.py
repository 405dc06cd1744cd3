"""`clients.scope.summary`: a listing's one-line scope."""

from clients.scope import summary


def test_limits_are_named_and_no_limit_is_a_star():
    assert summary(["org acme"]) == "apps=* actions=*"
    assert summary(["org acme", "apps orders,billing", "actions rw", "expires 2027-01-01T00:00:00Z"]) == \
        "apps=orders,billing actions=rw"
    assert summary(["org acme", "hosts w1", "instances i-1", "actions r"]) == "apps=* actions=r hosts=w1 instances=i-1"
    assert summary(None) == "?"
