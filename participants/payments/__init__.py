"""The payments service: charges customer accounts and refunds those charges."""
