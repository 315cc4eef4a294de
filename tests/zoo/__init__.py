"""Architecture zoo: "bring your own" torch face models of other families than the reference network."""
