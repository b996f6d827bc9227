"""Focus sessions and profiles (seeds 000, 001): sessions, insights, profiles, the profile job, flags."""
