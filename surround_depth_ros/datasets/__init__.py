"""Readers that yield `FrameSet`s from the synthetic world, nuScenes, DDAD/DGP and rosbag2."""
