"""Who may see and do what: named users with roles and wards, signed care-team actions, and
the tamper-evident audit chain of alarm transitions."""
