"""我的待办 (home): the resident's to-dos from every domain in one call, and their counts for badges."""
