"""The service's endpoints, one module per concern: records, search, pictures, writes."""
