"""Offline measurement: pure estimators, feature spaces, the evaluator, memory estimates."""
