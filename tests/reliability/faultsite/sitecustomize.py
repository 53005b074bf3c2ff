"""Run by Python at the start of every process of a job under tests/reliability/faultkit.faults_env."""

from tests.reliability.faultkit import install_from_env

install_from_env()
