"""Clinical scores and rules: pure functions over plain values, no I/O."""
