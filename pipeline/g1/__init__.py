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

Additions beyond the contract above (same module):

- Constants: ``BODY_PARENT_INDEX`` (30,), ``ANCHOR_BODY`` (``torso_link``), ``FOOT_BODIES``, ``HAND_BODIES``,
  ``STANDING_PELVIS_HEIGHT_M`` (0.792: soles on z = 0 at zero joints), ``DEFAULT_MJCF_PATH``,
  ``MOTOR_EFFORT_LIMIT_NM`` / ``MOTOR_VELOCITY_LIMIT_RAD_S`` (dicts by joint name; the fallback for a user MJCF
  without ``actuatorfrcrange`` or the ``velocity_limit_rad_s:<joint>`` numerics the bundled file carries).
- Functions: ``breadth_first_order(parent_index) -> list[int]``, ``quat_wxyz_to_rotmat(q (..., 4)) -> (..., 3, 3)``.
- ``G1Model`` also has ``isaac_body_names`` / ``isaac_joint_names`` (the BFS orders of the loaded file),
  ``body_joint_index`` (B,) (-1 for the root), ``joint_anchor_m`` (B, 3), ``joint_ref_rad`` (29,),
  ``joint_qpos_index`` (29,), ``body_com_m`` (B, 3), ``body_inertia_kg_m2`` (B, 3) with
  ``body_inertia_quat_wxyz`` (B, 4), ``has_free_joint``, ``nq``, ``num_bodies``; ``body_index(name)``,
  ``joint_index(name)``, ``site_body(name)``; ``qpos(root_pos_m, root_quat_wxyz, joint_pos_rad) -> (T, nq)``
  (MuJoCo qpos of the file); ``sole_points_m(foot_body) -> (4, 3)`` (lowest sole points in the foot frame);
  ``collision``: a ``CollisionCapsules`` table (every collision shape of the bundled model is a capsule or a
  sphere, in body frames: ``names``, ``body_index``, ``a_m``, ``b_m``, ``radius_m``, ``is_sole``, and
  ``self_pairs`` (P, 2), the capsule pairs MuJoCo tests for self-collision).
"""
