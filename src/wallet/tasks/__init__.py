"""taskiq tasks: each opens its own unit of work and calls the domain."""
