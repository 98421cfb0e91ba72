"""taskiq tasks, declared on taskiq's shared broker and bound to the real one by the worker.

Each task opens its own units of work and calls the domain; what it needs arrives in the
broker's state as a `TaskDeps`, put there by the process that runs it.
"""
