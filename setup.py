"""ament_python package definition: colcon and pip both build from here."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "surround_depth_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
        (f"share/{PACKAGE}/config/training", glob("config/training/*.yaml")),
        (f"share/{PACKAGE}/models", glob("models/*.pt")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="surround_depth_ros developers",
    maintainer_email="surround-depth@example.com",
    description="Surround-view metric depth from a distilled student network, for ROS 2.",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            f"surround_depth_node = {PACKAGE}.ros.supervisor:main",
            f"surround-depth = {PACKAGE}.tools.cli:main",
        ],
    },
)
