"""Model flavors: one module per framework, each implementing `runtimes.base.Flavor`."""
