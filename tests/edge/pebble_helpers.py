"""The real ACME server for tests (edge.pebbletesting), under the name tests/edge imports it by."""

from edge.pebbletesting import (Pebble, free_port, handshake, have_pebble,  # noqa: F401
                                make_ca_and_leaf, verified_serial)
