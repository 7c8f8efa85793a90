"""Op interfaces: what model layers call and platforms implement."""
