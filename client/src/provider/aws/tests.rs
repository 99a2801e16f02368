//! Unit tests of the AWS provider: what can be checked without AWS.
