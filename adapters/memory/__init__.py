"""In-memory implementations of the ports, for the tests and the model checker."""
