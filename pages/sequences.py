"""Sequences page (placeholder until its owner's page lands; see issue 5)."""
import streamlit as st

st.title("Sequences")
st.info("This page is being built.")
