"""The request pipeline: model resolution, the gateway object, accounting."""
