"""The threshold KMS: share files sealed at rest, the dealer ceremony, and the KmsService node."""
