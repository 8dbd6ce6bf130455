"""Fault-injection tests: real processes, real signals, a real network partition."""
