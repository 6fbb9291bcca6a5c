"""The Releases view's read model (matrix, service history, pending work, operations), cached by GitOps commit."""
