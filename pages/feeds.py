import streamlit as st

st.title("Feeds")
st.info("This screen is being built.")
