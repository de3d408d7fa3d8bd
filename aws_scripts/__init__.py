"""Deployment of clinrisk to AWS (S3, ECR, ECS on Fargate, ELBv2) with boto3, one module per step.

Run a step as `python -m aws_scripts.<step> --env staging|production [--dry-run]`; see README.md.
"""
