"""The Unitree G1 (29 DoF): the project's own MJCF description and its kinematics.

Public API (``pipeline.g1.model``):

- ``JOINT_NAMES``: the 29 hinge joints in MuJoCo qpos order = Unitree SDK order = CSV order, XML names without
  the ``_joint`` suffix (``left_hip_pitch`` ... ``right_wrist_yaw``).
- ``BODY_NAMES``: the 30 bodies (``pelvis`` first, world excluded) in MuJoCo depth-first order (mjlab NPZ order).
- ``ISAAC_BODY_NAMES`` / ``ISAAC_JOINT_NAMES``: the PhysX breadth-first orders (Isaac Lab / BeyondMimic NPZ).
- ``TRACKED_BODIES``: the 14 bodies training trackers follow.
- ``load_g1(mjcf_path=None) -> G1Model``: the bundled ``g1_29dof.xml`` or a user MJCF with the same joint names.
- ``G1Model``: ``joint_names``, ``body_names``, ``parent_index`` (B,), ``body_pos_m`` (B, 3) and
  ``body_quat_wxyz`` (B, 4) offsets in the parent frame, ``joint_axis`` (B, 3) (zeros for the root),
  ``joint_body_index`` (29,), ``joint_range_rad`` (29, 2), ``joint_vel_limit_rad_s`` (29,),
  ``joint_effort_limit_nm`` (29,), ``body_mass_kg`` (B,), ``total_mass_kg``, ``mjcf_path``;
  ``fk(root_pos_m (T,3), root_quat_wxyz (T,4), joint_pos_rad (T,29)) -> (body_pos_w_m (T,B,3),
  body_quat_w_wxyz (T,B,4))`` in numpy; ``fk_torch(root_pos_m, root_rotmat (T,3,3), joint_pos_rad) ->
  (body_pos_w_m (T,B,3), body_rotmat_w (T,B,3,3))`` differentiable, vectorised over frames;
  ``site_pos(name)`` offsets of sites (``left_foot``, ``right_foot``, ``left_palm``, ...) in their body frame;
  ``mj_model()`` a ``mujoco.MjModel`` of the same file.
"""
