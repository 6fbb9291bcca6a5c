"""The platform's HTTP endpoints, served by Airflow's API server under /release."""
