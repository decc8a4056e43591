"""What a study records and what is read back from it: record keys, frames, reports, the model library."""
