//! Unit tests of the plan, the verdicts, the rows and the plot.
