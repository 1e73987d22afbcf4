"""Hostnames as the Gateway API compares them: wildcards, intersections, specificity.

One module answers "does this name match that pattern" for listeners,
HTTPRoutes and Ingress rules alike, so the controller and the edge's route
table can never disagree about it (the edge receives the results, already
intersected and ordered, and only compares a request's Host with them).

The spec's rules: a hostname is lower case; `*.example.com` matches any name
with at least one more label in front (`foo.example.com`,
`foo.bar.example.com`) but not `example.com` itself; an empty pattern (a
listener or route without hostname) matches everything. Between candidates,
the more specific wins: an exact name before any wildcard, then the wildcard
with the longer suffix (more characters), and "any" last.
"""

ANY = ""                        # no hostname: matches every request


def normalize(name):
    """Lower case, no trailing dot, no port (a request's Host may carry one)."""
    name = (name or "").strip().lower()
    if name.startswith("["):                        # an IPv6 literal, [::1]:80
        return name.split("]", 1)[0] + "]"
    host = name.rsplit(":", 1)[0] if name.count(":") == 1 else name
    return host.rstrip(".")


def is_wildcard(pattern):
    return pattern.startswith("*.")


def matches(pattern, name):
    """Whether a request for `name` (already normalized) falls under `pattern`."""
    if pattern == ANY:
        return True
    if is_wildcard(pattern):
        suffix = pattern[1:]                        # ".example.com"
        return name.endswith(suffix) and len(name) > len(suffix)
    return name == pattern


def intersect(a, b):
    """The names both patterns accept, as one pattern, or None when they share none.

    Either may be ANY. Two wildcards intersect in the longer one when it falls
    under the shorter (`*.b.example.com` within `*.example.com`); a name and
    a wildcard in the name when the wildcard matches it.
    """
    if a == ANY:
        return b
    if b == ANY:
        return a
    if a == b:
        return a
    if is_wildcard(a) and is_wildcard(b):
        longer, shorter = (a, b) if len(a) >= len(b) else (b, a)
        return longer if longer[1:].endswith(shorter[1:]) else None
    if is_wildcard(a):
        return b if matches(a, b) else None
    if is_wildcard(b):
        return a if matches(b, a) else None
    return None


def specificity(pattern):
    """A sort key: higher is more specific (exact > longer wildcard > shorter wildcard > ANY)."""
    if pattern == ANY:
        return (0, 0)
    if is_wildcard(pattern):
        return (1, len(pattern))
    return (2, len(pattern))


def best_match(patterns, name):
    """The most specific of `patterns` that matches `name`, or None."""
    found = [p for p in patterns if matches(p, name)]
    return max(found, key=specificity) if found else None
