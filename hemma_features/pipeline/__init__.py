"""The cluster side: stages as Ray Data actor pools, run by a coordinator actor."""
