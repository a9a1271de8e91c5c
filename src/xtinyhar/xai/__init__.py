"""Explainability: Integrated Gradients over the raw IMU window, attention rollout, and
teacher-student attention similarity."""
