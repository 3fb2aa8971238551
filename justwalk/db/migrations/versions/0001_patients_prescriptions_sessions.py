"""Patients, prescriptions, sessions (issue #16).

Revision ID: 0001
Revises: (none)
Create Date: 2026-12-07 20:24:35.536420
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table('clinics',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_clinics'))
    )
    op.create_table('api_tokens',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('clinic_id', sa.String(length=64), nullable=False),
    sa.Column('token_sha256', sa.String(length=64), nullable=False),
    sa.Column('label', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['clinic_id'], ['clinics.id'], name=op.f('fk_api_tokens_clinic_id_clinics')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_tokens')),
    sa.UniqueConstraint('token_sha256', name=op.f('uq_api_tokens_token_sha256'))
    )
    op.create_index(op.f('ix_api_tokens_clinic_id'), 'api_tokens', ['clinic_id'], unique=False)
    op.create_table('patients',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('clinic_id', sa.String(length=64), nullable=False),
    sa.Column('sensor_height_m', sa.Float(), nullable=True),
    sa.Column('walking_aid', sa.Enum('none', 'cane', 'two_canes', 'crutches', 'walker', 'rollator', name='walking_aid', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('reference_ranges', sa.JSON(), nullable=False),
    sa.Column('alert_thresholds', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['clinic_id'], ['clinics.id'], name=op.f('fk_patients_clinic_id_clinics')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_patients'))
    )
    op.create_index(op.f('ix_patients_clinic_id'), 'patients', ['clinic_id'], unique=False)
    op.create_table('prescriptions',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('patient_id', sa.String(length=64), nullable=False),
    sa.Column('session_type', sa.Enum('free_walk', 'guided_walk', 't25fw', '2mwt', '6mwt', name='session_type', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('pace', sa.Enum('comfortable', 'fast', name='pace', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('duration_s', sa.Float(), nullable=True),
    sa.Column('target_distance_m', sa.Float(), nullable=True),
    sa.Column('times_per_week', sa.Integer(), nullable=False),
    sa.Column('cadence_low_spm', sa.Float(), nullable=True),
    sa.Column('cadence_high_spm', sa.Float(), nullable=True),
    sa.Column('start_date', sa.Date(), nullable=False),
    sa.Column('end_date', sa.Date(), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('therapist_note', sa.Text(), nullable=False),
    sa.Column('feedback_cadence_cue', sa.Boolean(), nullable=False),
    sa.Column('feedback_metronome_spm', sa.Float(), nullable=True),
    sa.Column('feedback_rest_suggestion', sa.Boolean(), nullable=False),
    sa.Column('feedback_progress_every_s', sa.Float(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('cadence_low_spm IS NULL OR cadence_high_spm IS NULL OR cadence_low_spm <= cadence_high_spm', name=op.f('ck_prescriptions_cadence_band')),
    sa.CheckConstraint('end_date IS NULL OR start_date <= end_date', name=op.f('ck_prescriptions_dates')),
    sa.CheckConstraint('times_per_week >= 1 AND times_per_week <= 21', name=op.f('ck_prescriptions_frequency')),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_prescriptions_patient_id_patients')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_prescriptions'))
    )
    op.create_index(op.f('ix_prescriptions_patient_id'), 'prescriptions', ['patient_id'], unique=False)
    op.create_table('sessions',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('patient_id', sa.String(length=64), nullable=False),
    sa.Column('prescription_id', sa.Integer(), nullable=True),
    sa.Column('session_type', sa.Enum('free_walk', 'guided_walk', 't25fw', '2mwt', '6mwt', name='session_type', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('device_id', sa.String(length=64), nullable=False),
    sa.Column('device_session_id', sa.String(length=64), nullable=False),
    sa.Column('status', sa.Enum('running', 'completed', 'stopped_early', 'disconnected', name='session_status', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('course_length_m', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_sessions_patient_id_patients')),
    sa.ForeignKeyConstraint(['prescription_id'], ['prescriptions.id'], name=op.f('fk_sessions_prescription_id_prescriptions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sessions')),
    sa.UniqueConstraint('device_id', 'device_session_id', name=op.f('uq_sessions_device_id_device_session_id'))
    )
    op.create_index(op.f('ix_sessions_patient_id'), 'sessions', ['patient_id'], unique=False)
    op.create_index(op.f('ix_sessions_prescription_id'), 'sessions', ['prescription_id'], unique=False)
    op.create_table('session_minutes',
    sa.Column('session_id', sa.Integer(), nullable=False),
    sa.Column('minute', sa.Integer(), nullable=False),
    sa.Column('distance_m', sa.Float(), nullable=False),
    sa.Column('steps', sa.Integer(), nullable=False),
    sa.Column('speed_mps', sa.Float(), nullable=False),
    sa.Column('cadence_spm', sa.Float(), nullable=False),
    sa.CheckConstraint('minute >= 1', name=op.f('ck_session_minutes_minute')),
    sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], name=op.f('fk_session_minutes_session_id_sessions')),
    sa.PrimaryKeyConstraint('session_id', 'minute', name=op.f('pk_session_minutes'))
    )
    op.create_table('session_results',
    sa.Column('session_id', sa.Integer(), nullable=False),
    sa.Column('duration_s', sa.Float(), nullable=False),
    sa.Column('distance_m', sa.Float(), nullable=True),
    sa.Column('distance_uncertainty_m', sa.Float(), nullable=True),
    sa.Column('steps', sa.Integer(), nullable=False),
    sa.Column('mean_speed_mps', sa.Float(), nullable=True),
    sa.Column('mean_cadence_spm', sa.Float(), nullable=True),
    sa.Column('stride_time_cv_pct', sa.Float(), nullable=True),
    sa.Column('near_falls', sa.Integer(), nullable=False),
    sa.Column('adherence_pct', sa.Float(), nullable=True),
    sa.Column('t25fw_time_s', sa.Float(), nullable=True),
    sa.Column('dwi_pct', sa.Float(), nullable=True),
    sa.Column('dwi_minute2_pct', sa.Float(), nullable=True),
    sa.Column('fatigability', sa.Boolean(), nullable=True),
    sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], name=op.f('fk_session_results_session_id_sessions')),
    sa.PrimaryKeyConstraint('session_id', name=op.f('pk_session_results'))
    )


def downgrade() -> None:
    """Undo this revision."""
    op.drop_table('session_results')
    op.drop_table('session_minutes')
    op.drop_index(op.f('ix_sessions_prescription_id'))
    op.drop_index(op.f('ix_sessions_patient_id'))
    op.drop_table('sessions')
    op.drop_index(op.f('ix_prescriptions_patient_id'))
    op.drop_table('prescriptions')
    op.drop_index(op.f('ix_patients_clinic_id'))
    op.drop_table('patients')
    op.drop_index(op.f('ix_api_tokens_clinic_id'))
    op.drop_table('api_tokens')
    op.drop_table('clinics')
