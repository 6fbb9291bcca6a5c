"""Commands that run inside the platform image in a pod (`python -m release.tools.smoke`,
`python -m release.tools.verify`); they import nothing else of the platform."""
