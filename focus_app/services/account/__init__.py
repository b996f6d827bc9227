"""What a user controls about their own account: settings, export, deletion, dashboard data."""
