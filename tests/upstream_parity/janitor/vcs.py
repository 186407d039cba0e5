"""``janitor.vcs.get_vcs_managers``: the managers of a location are that location."""


def get_vcs_managers(location: str) -> str:
    return location
