from server.ratelimit import SlidingCounter, throttle_key


def test_throttle_key_groups_ipv6_by_64():
    assert throttle_key("2001:db8:1:2:aaaa::1") == throttle_key("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert throttle_key("2001:db8:1:3::1") != throttle_key("2001:db8:1:2::1")
    assert throttle_key("127.0.0.1") == "127.0.0.1"
    assert throttle_key("::ffff:10.0.0.1") == "10.0.0.1"
    assert throttle_key("unknown") == "unknown"


def test_sliding_counter_window_and_bound():
    c = SlidingCounter(limit=2, window=10, max_keys=2)
    c.add("a", now=0)
    assert c.retry_after("a", now=1) is None
    c.add("a", now=1)
    assert c.retry_after("a", now=2) == 9
    assert c.retry_after("a", now=11) is None  # the first hit left the window
    c.add("b", now=3)
    c.add("c", now=4)
    assert c.retry_after("a", now=5) is None  # the oldest key was dropped at the bound
