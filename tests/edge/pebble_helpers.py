"""The real ACME server for tests (edge.pebbletesting), under the name tests/edge imports it by."""

from edge.pebbletesting import Pebble, free_port, have_pebble, make_ca_and_leaf  # noqa: F401
