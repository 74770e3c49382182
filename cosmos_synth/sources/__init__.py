"""Where episodes come from: the on-disk dataset layout (GR1-100 style) and the sources that write it."""
